"""The REST API (SPEC §6): read for authenticated users, writes for staff with the right permission."""
