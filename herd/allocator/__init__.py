"""Placement: Ganeti's iallocator protocol (:mod:`protocol`) and Herd's built-in allocator
(:mod:`builtin`). Both are pure: they see only the protocol's input document, so an external
allocator (Debian's ``hail``) and the built-in one are interchangeable behind one interface
(the runner is :mod:`herd.logic.iallocator`). Nothing here imports from outside herd.objects.
"""
