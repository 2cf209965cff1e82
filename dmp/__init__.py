"""The audience: users, segments, consent and true behaviour (clicks, conversions)."""
