"""Authoring: specs, environments and transforms, policy modules and exploration."""
