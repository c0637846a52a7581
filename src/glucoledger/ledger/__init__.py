"""glucoledger.ledger"""
