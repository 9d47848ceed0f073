"""Privacy to PIPL's standard: an elder's own data export (art. 45), erasure by anonymisation
(art. 47) with its record, and retention of calls, recordings and audit logs. (Who may see a
profile is elders/access.py.)"""
