"""One process, one device: the base Runtime as it is."""
from tf_gp2bm.runtime.base import Runtime, configure_gpus


class SingleDevice(Runtime):

  name = "none"

  @classmethod
  def create(cls):
    configure_gpus()
    return cls()
