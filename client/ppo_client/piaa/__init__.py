"""Personalised image aesthetic assessment: preference heads, few-shot methods, evaluation."""
