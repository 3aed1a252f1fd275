import pytest

from mmrec_ray.models import registry


@pytest.fixture
def empty_registry(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", {})
    monkeypatch.setattr(registry, "_import_all", lambda: None)


def make(name, depends_on=()):
    return type(name.title(), (), {"name": name, "depends_on": depends_on})


def test_duplicate_name_raises(empty_registry):
    registry.register(make("a"))
    with pytest.raises(ValueError, match="already registered"):
        registry.register(make("a"))


def test_dependency_order_puts_dependencies_first_once(empty_registry):
    for cls in (make("conv"), make("sess"), make("fusion", ("conv", "sess")), make("kd", ("conv", "sess"))):
        registry.register(cls)
    order = registry.dependency_order(["kd", "fusion"])
    assert order == ["conv", "sess", "kd", "fusion"]


def test_cycle_and_unknown(empty_registry):
    registry.register(make("x", ("y",)))
    registry.register(make("y", ("x",)))
    with pytest.raises(ValueError, match="cycle"):
        registry.dependency_order(["x"])
    with pytest.raises(KeyError, match="unknown model 'zzz'"):
        registry.get("zzz")
