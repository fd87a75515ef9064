"""The demo world: procedural scenes, virtual users and their rating data, usable offline."""
