"""glucoledger.state"""
