"""The views, one module per kind of page; what several share is in pages.py."""
