"""Stage two: rewrite prompts until the generated images score highest under a user's taste."""
