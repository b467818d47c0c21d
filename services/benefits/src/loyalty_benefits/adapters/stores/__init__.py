"""The benefits service's stores, one module each (SQL on the asyncpg connection of the unit of
work's transaction)."""
