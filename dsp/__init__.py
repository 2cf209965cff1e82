"""Demand side: campaigns, bidding strategies, pacing and CTR/CVR prediction."""
