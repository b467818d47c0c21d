"""The back-office console served by the gateway at /console (see app.py)."""
