"""Supply side: publishers and their traffic, floors, and the background market."""
