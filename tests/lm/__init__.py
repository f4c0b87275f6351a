"""Tests of wavefoundry.lm."""
