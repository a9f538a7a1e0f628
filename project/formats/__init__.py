"""The admin's formats (settings.FORMAT_MODULE_PATH): one date-and-time format for every page."""
