"""The sweep file -> a validated SweepSpec (nothing heavy is imported here)."""
