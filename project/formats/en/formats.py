# One date-and-time format for the whole admin: the change lists (chatmodels/admin/display.py),
# Django's own read-only fields and history, and the usage page all render `2026-11-24 19:40`.
DATETIME_FORMAT = "Y-m-d H:i"
