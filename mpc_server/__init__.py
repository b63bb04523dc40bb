"""The MPC server: one of three parties holding replicated shares.

Layers, imports pointing one way: ``mpc_core`` <- ``protocol`` <- ``service``
<- {``api``, ``transport``} <- ``app`` (the composition root).
"""
