; Inno Setup script of the Windows installer. packaging/build.py compiles it after PyInstaller made the app folder:
;   iscc /DAppVersion=0.1.0 /DVariant=cpu /DSourceDir=<app folder> /DIconFile=<nodegraph.ico> /DOutputDir=<dist>
; Installs per user or for everyone (the user chooses), adds a Start-menu entry, an optional desktop shortcut and an
; uninstaller, and offers nodegraph in "Open with" for .json files without becoming their default app.
; NOT TESTED on the project's machines (Linux only): built by .github/workflows/installers.yml.

#define AppName "nodegraph"

[Setup]
AppId={{6B7D2F0E-4C1A-4E7B-9F3D-2A8C5E1B7D40}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion} ({#Variant})
AppPublisher=nodegraph developers
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir={#OutputDir}
OutputBaseFilename={#AppName}-{#AppVersion}-windows-x64-{#Variant}-setup
SetupIconFile={#IconFile}
UninstallDisplayIcon={app}\nodegraph.exe
Compression=lzma2
SolidCompression=yes
; a CUDA build holds several GB: lzma2 on solid blocks keeps the set-up file well under the 4 GB limit
DiskSpanning=no
ChangesAssociations=yes
WizardStyle=modern

[Tasks]
Name: "desktopicon"; Description: "Create a &desktop shortcut"; Flags: unchecked

[Files]
Source: "{#SourceDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\{#AppName}"; Filename: "{app}\nodegraph.exe"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\nodegraph.exe"; Tasks: desktopicon

[Registry]
; "Open with" for workflows: a ProgID listed under .json's OpenWithProgids, never .json's default.
Root: HKA; Subkey: "Software\Classes\nodegraph.workflow"; ValueType: string; ValueName: ""; ValueData: "nodegraph workflow"; Flags: uninsdeletekey
Root: HKA; Subkey: "Software\Classes\nodegraph.workflow\DefaultIcon"; ValueType: string; ValueName: ""; ValueData: "{app}\nodegraph.exe,0"
Root: HKA; Subkey: "Software\Classes\nodegraph.workflow\shell\open\command"; ValueType: string; ValueName: ""; ValueData: """{app}\nodegraph.exe"" ""%1"""
Root: HKA; Subkey: "Software\Classes\.json\OpenWithProgids"; ValueType: string; ValueName: "nodegraph.workflow"; ValueData: ""; Flags: uninsdeletevalue

[Run]
Filename: "{app}\nodegraph.exe"; Description: "Start {#AppName}"; Flags: nowait postinstall skipifsilent

[UninstallDelete]
; nothing the app writes lives here (settings, models and images are in the user's folders), but be thorough
Type: filesandordirs; Name: "{app}"
