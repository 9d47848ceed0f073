"""12349 elderly-care hotline backend: application core."""
