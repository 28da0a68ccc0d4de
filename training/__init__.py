"""recsvc training: cross-channel history in, evaluated and versioned model artifact out."""
