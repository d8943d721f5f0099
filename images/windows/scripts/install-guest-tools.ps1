# The virtio drivers (storage and network are loaded by Setup already; this adds the serial port
# the guest agent talks over, the balloon and the rest) and the QEMU guest agent.
param([Parameter(Mandatory = $true)][string]$Source)
$ErrorActionPreference = 'Stop'

function Install-Msi([string]$Path) {
    if (-not (Test-Path $Path)) { throw "$Path is missing from the virtio-win media" }
    $process = Start-Process -FilePath msiexec.exe -ArgumentList @('/i', "`"$Path`"", '/qn', '/norestart') -Wait -PassThru
    if ($process.ExitCode -notin 0, 3010) { throw "$Path exited with $($process.ExitCode)" }
}

Install-Msi (Join-Path $Source 'virtio-win-gt-x64.msi')
Install-Msi (Join-Path $Source 'guest-agent\qemu-ga-x86_64.msi')
Set-Service -Name QEMU-GA -StartupType Automatic
