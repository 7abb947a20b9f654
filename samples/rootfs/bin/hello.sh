#!/bin/sh
# Prints the greeting from /etc/motd.
cat /etc/motd
