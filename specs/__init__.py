"""What the terminal and the host must agree on: dialects, codec, framing, codes, masking.

Imports nothing else of ours; ``emulator`` and ``host_stub`` import this package and never each other.
"""
