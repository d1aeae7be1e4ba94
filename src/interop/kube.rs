//! Unit files written as Kubernetes objects.
