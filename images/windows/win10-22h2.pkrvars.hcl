# Windows 10 22H2: UEFI without Secure Boot (Windows 10 does not require it; an unsigned test
# driver would be refused with it on).
secure_boot   = false
tpm           = false
disk_size_mib = 65536
memory_mib    = 4096
cpus          = 2
