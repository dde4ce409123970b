//! Shared harness for the end-to-end tests (real processes on loopback).
