"""Compression methods over a shared engine; so far the sub-network search of GAN Compression."""
