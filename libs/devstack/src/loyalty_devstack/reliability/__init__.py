"""Fault scenarios (`loyalty-dev reliability`, `make reliability`): the suite under a steady
load through the gateway while one thing fails, then proof that nothing acknowledged was lost
and nothing was done twice (the members' postings and `loyalty-check`).

    suite.py      the services as processes of their own (kill -9 is real)
    load.py       purchases, checkouts and redemptions over HTTP, retried with the same id
    scenarios.py  the faults
    admin.py      the harness's own calls: members, postings, health, settling
    outcomes.py   attempts, effects on the ledger, the row (pure arithmetic)
    runner.py     one scenario after another; report.py the table and JSON
"""
