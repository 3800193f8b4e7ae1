"""pAirZero: zeroth-order federated fine-tuning with scalar uploads and privacy accounting.

- :mod:`~lit_airlora.zeroth_order.perturbation`: seeded Gaussian directions, regenerated in place
  (never stored), evaluation at ``theta +- mu z``, the projected-gradient scalar and the update.
- :mod:`~lit_airlora.zeroth_order.local_update`: the zeroth-order training mode of the federated
  module (``FederatedLoRAModule(zeroth_order=ZerothOrder(...))``).
- :mod:`~lit_airlora.zeroth_order.privacy`: (epsilon, delta) budgets, noise schedules and the
  accountant (Google's ``dp-accounting``).
- :mod:`~lit_airlora.zeroth_order.memory`: the memory and upload arithmetic of the paper's Table II.
"""

from lit_airlora.zeroth_order.local_update import ZerothOrder
from lit_airlora.zeroth_order.privacy import PrivacyBudget

__all__ = ["PrivacyBudget", "ZerothOrder"]
