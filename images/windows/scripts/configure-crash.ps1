# Make every crash visible and keep the crashed state: the testbed's whole job.
$ErrorActionPreference = 'Stop'

$crash = 'HKLM:\SYSTEM\CurrentControlSet\Control\CrashControl'
# Do not reboot after a bugcheck: the hypervisor preserves the crashed guest (on_crash=preserve)
# and a boot loop stays countable.
Set-ItemProperty -Path $crash -Name AutoReboot -Type DWord -Value 0
# Kernel memory dump (MEMORY.DMP); Windows also writes a small dump to C:\Windows\Minidump, which
# the testbed fetches and reads for the faulting driver.
Set-ItemProperty -Path $crash -Name CrashDumpEnabled -Type DWord -Value 2
Set-ItemProperty -Path $crash -Name MinidumpDir -Type ExpandString -Value '%SystemRoot%\Minidump'
Set-ItemProperty -Path $crash -Name Overwrite -Type DWord -Value 1
Set-ItemProperty -Path $crash -Name AlwaysKeepMemoryDump -Type DWord -Value 1
# The NMI the testbed injects into a silent guest becomes a bugcheck (0x80) with a dump.
Set-ItemProperty -Path $crash -Name NMICrashDump -Type DWord -Value 1

# No automatic repair: a guest that fails to boot must fail again, not repair itself into a pass.
bcdedit.exe /set '{default}' recoveryenabled No | Out-Null
if ($LASTEXITCODE -ne 0) { throw "bcdedit recoveryenabled exited with $LASTEXITCODE" }
bcdedit.exe /set '{default}' bootstatuspolicy IgnoreAllFailures | Out-Null
if ($LASTEXITCODE -ne 0) { throw "bcdedit bootstatuspolicy exited with $LASTEXITCODE" }
# Quick Machine Recovery (Windows 11 24H2 and later) and startup repair both run inside WinRE:
# disabling WinRE switches both off.
reagentc.exe /disable | Out-Null

# The domain's RTC runs in UTC (<clock offset='utc'/>).
Set-ItemProperty -Path 'HKLM:\SYSTEM\CurrentControlSet\Control\TimeZoneInformation' `
    -Name RealTimeIsUniversal -Type DWord -Value 1

# A guest that sleeps or hibernates looks hung.
powercfg.exe /hibernate off
powercfg.exe /change standby-timeout-ac 0
powercfg.exe /change monitor-timeout-ac 0
