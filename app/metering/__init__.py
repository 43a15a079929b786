"""The hot path: the quota meter on Redis.

Never imports ``billing``, ``marketplace`` or ``web`` (the hot path stays small). PostgreSQL is read
only on a configuration miss, never per check.
"""
