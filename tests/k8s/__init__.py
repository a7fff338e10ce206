"""Kubernetes test doubles: ``fakeapi`` (a fake API server, in-process or standalone) and the
versioned object ``store`` behind it."""
