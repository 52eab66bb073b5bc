"""Placeholder until its owner commits it."""

from fastapi import APIRouter

router = APIRouter()
