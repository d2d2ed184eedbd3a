"""antispoof: reproducible anti-spoofing experiments."""
