"""Services declared as a user of Ballast would: each folder trains its models, stores them, and
declares its service in a few lines."""
