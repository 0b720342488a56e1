"""Pure logic shared by every layer above it (see README.md)."""
