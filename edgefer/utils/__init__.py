"""Small shared helpers: atomic writes, hashing, environment description."""
