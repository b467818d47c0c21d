"""The shared kernel: the few domain words every service uses the same way, apart from the
kit's plumbing (pure Python but for Money's protobuf form).

- `members`  members' resource names (`members/{id}`), member states, member tags
- `units`    business unit codes
- `money`    exact amounts with their currency, checked against its minor units
"""
