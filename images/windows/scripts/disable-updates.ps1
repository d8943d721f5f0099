# A golden image must not change under the tests: no Windows Update, no update orchestrator, no
# driver updates. (The guest network has no route out anyway; this keeps the services quiet.)
$ErrorActionPreference = 'Stop'

$policy = 'HKLM:\SOFTWARE\Policies\Microsoft\Windows\WindowsUpdate'
New-Item -Path "$policy\AU" -Force | Out-Null
Set-ItemProperty -Path "$policy\AU" -Name NoAutoUpdate -Type DWord -Value 1
Set-ItemProperty -Path $policy -Name DoNotConnectToWindowsUpdateInternetLocations -Type DWord -Value 1
Set-ItemProperty -Path $policy -Name ExcludeWUDriversInQualityUpdate -Type DWord -Value 1

foreach ($service in 'wuauserv', 'UsoSvc', 'WaaSMedicSvc') {
    # WaaSMedicSvc refuses Set-Service; its Start value is what the service manager reads.
    $key = "HKLM:\SYSTEM\CurrentControlSet\Services\$service"
    if (Test-Path $key) {
        Stop-Service -Name $service -Force -ErrorAction SilentlyContinue
        Set-ItemProperty -Path $key -Name Start -Type DWord -Value 4
    }
}
