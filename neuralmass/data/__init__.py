"""Data files bundled with neuralmass (see README.md in this folder)."""
