# Run by Packer over WinRM before sysprep: fail the build when a setting the testbed relies on is
# not in place, rather than ship an image whose crashes would go unseen.
$ErrorActionPreference = 'Stop'
$problems = @()

$crash = Get-ItemProperty -Path 'HKLM:\SYSTEM\CurrentControlSet\Control\CrashControl'
if ($crash.AutoReboot -ne 0) { $problems += 'CrashControl AutoReboot is not 0' }
if ($crash.CrashDumpEnabled -notin 2, 3) { $problems += 'no kernel or small memory dump configured' }
if ($crash.NMICrashDump -ne 1) { $problems += 'NMICrashDump is not 1' }

$boot = bcdedit.exe /enum '{default}' | Out-String
if ($boot -notmatch 'recoveryenabled\s+No') { $problems += 'automatic repair (recoveryenabled) is on' }
if ($boot -notmatch 'bootstatuspolicy\s+IgnoreAllFailures') { $problems += 'bootstatuspolicy is not IgnoreAllFailures' }
if ((reagentc.exe /info | Out-String) -match 'Windows RE status:\s+Enabled') { $problems += 'WinRE is enabled' }

foreach ($service in 'QEMU-GA', 'WinRM') {
    if ((Get-Service -Name $service).StartType -ne 'Automatic') { $problems += "$service does not start automatically" }
}
if ((Get-Service -Name wuauserv).StartType -ne 'Disabled') { $problems += 'Windows Update is not disabled' }
if (-not (Test-Path 'C:\testbed\sysprep-unattend.xml')) { $problems += 'sysprep-unattend.xml is missing' }

if ($problems) { throw ("the image is not fit for testing: " + ($problems -join '; ')) }
Write-Output 'image checks passed'
