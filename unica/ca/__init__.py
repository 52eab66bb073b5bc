"""Certification authority: issuance and revocation lists."""
