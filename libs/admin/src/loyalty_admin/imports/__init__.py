"""`loyalty-admin imports`: units' legacy members (and past orders) brought in by file through
the identity service's import RPCs, followed with a progress bar; the report and the merge
candidates (docs/member-import.md)."""
