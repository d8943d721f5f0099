# First logon of a fresh install (autounattend.xml runs this from the TESTBED CD): copy the
# testbed's scripts to C:\testbed, apply the crash settings, turn off updates, install the virtio
# guest tools and the QEMU guest agent, and enable WinRM LAST -- Packer waits for WinRM, so when
# it answers, everything else is in place.
$ErrorActionPreference = 'Stop'
Start-Transcript -Path 'C:\testbed\setup.log' -Append

$cd = (Get-Volume -FileSystemLabel 'TESTBED').DriveLetter
if (-not $cd) { throw 'the TESTBED CD is not attached' }
New-Item -ItemType Directory -Force -Path 'C:\testbed\scripts' | Out-Null
Copy-Item -Path "$($cd):\scripts\*" -Destination 'C:\testbed\scripts' -Force
Copy-Item -Path "$($cd):\sysprep-unattend.xml" -Destination 'C:\testbed\sysprep-unattend.xml' -Force

& 'C:\testbed\scripts\configure-crash.ps1'
& 'C:\testbed\scripts\disable-updates.ps1'
& 'C:\testbed\scripts\install-guest-tools.ps1' -Source "$($cd):\virtio-win"
& 'C:\testbed\scripts\enable-winrm.ps1'

Stop-Transcript
