"""Reconstruction arms behind one interface.

``spec`` (the identity of an arm: name, kind, gridsize, variant; plain data, no imports above the
error types), ``base`` (the :class:`~ptycho.arms.base.Arm` interface a method implements),
``builtin`` (the built-in arms and the external-command arm behind that interface) and
``registry`` (a name -> an arm class: built-in, entry point of the group ``ptycho_dose.arms`` or
``module:Class``). Importing this package imports none of them.
"""
