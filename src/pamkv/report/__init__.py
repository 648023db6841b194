"""(this layer is filled in by its own issue)"""
