"""Pure-Python twins of the native pieces (see sipedge._impl)."""
