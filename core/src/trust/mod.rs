//! OpenPGP trust: keys trusted per name prefix, and detached-signature verification.
