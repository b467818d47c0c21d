"""The shared kernel: the few domain words every service uses the same way, apart from the
kit's plumbing (pure Python but for Money's protobuf form and the imported orders' event).

- `members`  members' resource names (`members/{id}`), member states, member tags
- `units`    business unit codes
- `money`    exact amounts with their currency, checked against its minor units
- `orders`   past orders a unit imported (identity's LegacyOrdersImported), read and checked once
"""
