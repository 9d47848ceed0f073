"""The AMI simulator: an AMI server generating realistic call-centre traffic (callcenter simulate)."""
