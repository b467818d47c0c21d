"""The member's own page at /me: sign in by SMS code, then the member code, points, coupons and
consents, every service called with the member's own token (app.py)."""
