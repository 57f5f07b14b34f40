"""The fast tier's rule for deep models (``tests/conftest.py``): a parametrised check's
instance on a model of 101 layers or more moves to the slow tier only where the same check
keeps an instance on a shallower model in the fast tier, so that no check leaves the fast tier
whole."""

import conftest


class Item:
    def __init__(self, nodeid, slow=False):
        self.nodeid, self.slow = nodeid, slow

    def get_closest_marker(self, name):
        return object() if name == "slow" and self.slow else None


def test_deep_instances_move_only_where_a_shallow_fast_instance_stays():
    f, g, h, k = (f"tests/test_x.py::test_{n}" for n in "fghk")
    items = [Item(f + "[ResNet50]"), Item(f + "[ResNet152]"), Item(f + "[PreActResNet164CIFAR-kwargs3]"),
             Item(f + "[101]"), Item(g + "[164]"),  # g: only a deep instance, which stays
             Item(h + "[ResNet18]", slow=True), Item(h + "[ResNet200]"),  # h's shallow one is slow
             Item(k + "[ResNet50-1202]"), Item(k + "[ResNet20CIFAR]"), Item(k)]
    moved = [item.nodeid[len("tests/test_x.py::"):] for item in conftest._deep_instances(items)]
    assert moved == ["test_f[ResNet152]", "test_f[PreActResNet164CIFAR-kwargs3]", "test_f[101]"]
