"""glucoledger: a patient-controlled, tamper-evident ledger and encrypted vault for diabetes
data."""

__version__ = "0.1.0"
